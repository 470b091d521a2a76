"""Scoring benchmark (P5): kdbench's per-case scoring vs a MedPy-style scipy baseline.

One case is scored as kdbench scores every test case of a Job: Dice and HD95 (BraTS
definition, pooled distances) of the three regions WT, TC and ET, from two label maps in the
BraTS 2021 convention (``kdbench.metrics.scoring.score_case`` with the ``dice`` and ``hd95``
metric plugins). The baseline does what MedPy's ``dc`` and ``hd95`` do (``medpy.metric.binary``),
written here from scipy so that nothing else is installed: surfaces are a mask minus its
erosion by the face-connected cross, then one Euclidean distance transform of the *whole
volume* per direction (``scipy.ndimage.distance_transform_edt`` with the voxel spacing), and
the 95th percentile of the pooled distances. kdbench crops to the union bounding box and uses a
KD-tree over the surface voxels on CPU (MONAI), or a distance transform on the GPU.

The cases are synthetic BraTS-shaped pairs (240×240×155 at ``--size brats``): a reference
tumour (edema around a core with an enhancing rim and a necrotic centre, rough boundaries) and
a prediction that is the reference shifted, with its own boundary noise and a small false
positive elsewhere in the brain. Both methods score the same pairs; the values must agree
(``max_abs_difference``), and the ratio ``baseline / kdbench`` of the median per-case times is
the speed-up. Goals: ≥ 20 on a GPU, ≥ 3 on a CPU, at brats size.

Run from the repository root::

    python benchmarks/scoring_benchmark.py --size small            # CPU
    python benchmarks/scoring_benchmark.py --size brats --device cuda
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench_setup beside

from bench_setup import (  # noqa: E402
    commit_info,
    cpu_name,
    import_checkout,
    package_version,
    write_json_report,
)

#: Volume shapes (voxels, 1 mm spacing) and the tumour's semi-axes scale.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"shape": (48, 48, 32), "cases": 2, "repeats": 2},
    "small": {"shape": (120, 120, 78), "cases": 3, "repeats": 3},
    "brats": {"shape": (240, 240, 155), "cases": 3, "repeats": 3},
}
#: Goals at brats size: baseline time / kdbench time, by device kind.
GOALS = {"cuda": 20.0, "cpu": 3.0}
REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}  # BraTS 2021 labels
SPACING = (1.0, 1.0, 1.0)


# -- synthetic cases ------------------------------------------------------------------------------

def _rough_ellipsoid(shape: tuple[int, ...], centre: np.ndarray, axes: np.ndarray,
                     rng: np.random.Generator, roughness: float) -> np.ndarray:
    """An ellipsoid whose radius is modulated by smooth noise, computed in its bounding box."""
    from scipy.ndimage import gaussian_filter

    out = np.zeros(shape, dtype=bool)
    reach = np.ceil(axes * (1 + roughness) + 2).astype(int)
    lo = np.maximum(np.floor(centre).astype(int) - reach, 0)
    hi = np.minimum(np.floor(centre).astype(int) + reach + 1, shape)
    if np.any(hi <= lo):
        return out
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    radius = sum(((g - c) / a) ** 2 for g, c, a in zip(grids, centre, axes, strict=True))
    noise = gaussian_filter(rng.standard_normal(tuple(hi - lo)), sigma=3)
    noise /= np.abs(noise).max() or 1.0
    out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = (
        np.sqrt(radius) < 1 + roughness * noise)
    return out


def _tumour(shape: tuple[int, ...], centre: np.ndarray, scale: float, rng: np.random.Generator,
            roughness: float) -> np.ndarray:
    """BraTS 2021 labels: 2 edema, 4 enhancing rim, 1 necrotic core."""
    labels = np.zeros(shape, dtype=np.uint8)
    axes = np.array([30.0, 26.0, 22.0]) * scale
    labels[_rough_ellipsoid(shape, centre, axes, rng, roughness)] = 2
    labels[_rough_ellipsoid(shape, centre, axes * 0.55, rng, roughness)] = 4
    labels[_rough_ellipsoid(shape, centre, axes * 0.3, rng, roughness)] = 1
    return labels


def make_case(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A (prediction, reference) pair of BraTS 2021 label maps of ``shape``."""
    rng = np.random.default_rng(seed)
    scale = shape[0] / 240
    dims = np.array(shape, dtype=float)
    centre = dims / 2 + rng.uniform(-0.15, 0.15, 3) * dims
    ref = _tumour(shape, centre, scale, rng, roughness=0.12)
    pred = _tumour(shape, centre + rng.uniform(-2, 2, 3) * max(scale, 0.5), scale * 0.97, rng,
                   roughness=0.15)
    # a small false positive elsewhere in the brain (it widens the union bounding box)
    blob = _rough_ellipsoid(shape, dims * np.array([0.25, 0.7, 0.5]),
                            np.array([4.0, 4.0, 3.0]) * max(scale, 0.5), rng, 0.1)
    pred[blob & (pred == 0)] = 2
    return pred, ref


# -- the two methods ------------------------------------------------------------------------------

def medpy_hd95(result: np.ndarray, reference: np.ndarray, spacing: tuple[float, ...]) -> float:
    """MedPy's ``hd95``: surface distances from whole-volume distance transforms, pooled."""
    from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure

    footprint = generate_binary_structure(result.ndim, 1)

    def surface_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a_border = a ^ binary_erosion(a, structure=footprint, iterations=1)
        b_border = b ^ binary_erosion(b, structure=footprint, iterations=1)
        return distance_transform_edt(~b_border, sampling=spacing)[a_border]

    both = np.hstack((surface_distances(result, reference), surface_distances(reference, result)))
    return float(np.percentile(both, 95))


def medpy_dc(result: np.ndarray, reference: np.ndarray) -> float:
    """MedPy's ``dc``."""
    intersection = np.count_nonzero(result & reference)
    size = np.count_nonzero(result) + np.count_nonzero(reference)
    return 2.0 * intersection / size if size else 0.0


def score_baseline(pred: np.ndarray, ref: np.ndarray) -> dict[tuple[str, str], float]:
    out = {}
    for region, labels in REGIONS.items():
        p, r = np.isin(pred, labels), np.isin(ref, labels)
        out[(region, "dice")] = medpy_dc(p, r)
        out[(region, "hd95")] = medpy_hd95(p, r, SPACING)
    return out


def score_kdbench(pred: np.ndarray, ref: np.ndarray, metrics: list[Any]
                  ) -> dict[tuple[str, str], float]:
    from kdbench.metrics import surface
    from kdbench.metrics.scoring import score_case

    surface._cache.clear()  # never reuse distances between timed calls
    rows = score_case(pred, ref, SPACING, metrics, "brats2021")
    return {(row["region"], row["metric"]): row["value"] for row in rows}


# -- the benchmark --------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    import_checkout()
    from kdbench.metrics.surface import DEVICE_ENV, resolve_device
    from kdbench_plugins.brats_metrics import Dice, Hd95

    device = resolve_device(args.device or "auto")
    os.environ[DEVICE_ENV] = device
    preset = SIZES[args.size]
    shape = tuple(preset["shape"])
    cases = args.cases or preset["cases"]
    repeats = args.repeats or preset["repeats"]
    metrics = [Dice(), Hd95()]
    started = time.perf_counter()
    pairs = [make_case(shape, args.seed + i) for i in range(cases)]
    setup_s = time.perf_counter() - started
    # warm-up: imports, MONAI's first call, CUDA context (not timed)
    score_kdbench(*pairs[0], metrics)
    times: dict[str, list[float]] = {"baseline": [], "kdbench": []}
    worst = 0.0
    values: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for index, (pred, ref) in enumerate(pairs):
            results = {}
            for name, score in (("baseline", lambda p, r: score_baseline(p, r)),
                                ("kdbench", lambda p, r: score_kdbench(p, r, metrics))):
                begin = time.perf_counter()
                results[name] = score(pred, ref)
                times[name].append(time.perf_counter() - begin)
            for key, value in results["baseline"].items():
                worst = max(worst, abs(value - results["kdbench"][key]))
            values[f"case{index}"] = {f"{r}/{m}": v for (r, m), v in results["kdbench"].items()}
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    ratio = median["baseline"] / median["kdbench"]
    kind = "cuda" if device.startswith("cuda") else "cpu"
    on_goal_setup = args.size == "brats"
    return {
        "benchmark": "scoring_benchmark",
        "datetime": dt.datetime.now(dt.UTC).isoformat(),
        "machine_info": _machine_info(device),
        "commit_info": commit_info(),
        "config": {"size": args.size, "shape": list(shape), "spacing": list(SPACING),
                   "cases": cases, "repeats": repeats, "device": device, "seed": args.seed,
                   "metrics": ["dice", "hd95"], "regions": list(REGIONS),
                   "setup_s": setup_s},
        "results": {name: {"median_ms": median[name], "rounds": len(t),
                           "data_ms": [x * 1e3 for x in t]} for name, t in times.items()},
        "values": values,
        "max_abs_difference": worst,
        "ratios": {"baseline_over_kdbench": ratio},
        "goals": {
            "baseline_over_kdbench": GOALS[kind],
            "applies_to": f"brats size on {kind} (>= {GOALS[kind]})",
            "evaluated": on_goal_setup,
            "met": {"baseline_over_kdbench": ratio >= GOALS[kind]} if on_goal_setup else None,
        },
    }


def _machine_info(device: str) -> dict[str, Any]:
    import platform

    info = {"node": platform.node(), "python_version": platform.python_version(),
            "cpu": cpu_name(), "cpu_count": os.cpu_count(), "device_name": cpu_name(),
            "numpy_version": np.__version__, "scipy_version": package_version("scipy"),
            "monai_version": package_version("monai")}
    if device.startswith("cuda"):
        import torch

        info["device_name"] = torch.cuda.get_device_name(device)
        info["cupy_version"] = package_version("cupy-cuda12x")
        info["cucim_version"] = package_version("cucim-cu12")
    return info


def print_report(report: dict[str, Any]) -> None:
    config, results = report["config"], report["results"]
    shape = "×".join(str(s) for s in config["shape"])
    print(f"scoring benchmark: {config['size']} ({shape}, {config['cases']} cases × "
          f"{config['repeats']}), Dice + HD95 of WT/TC/ET per case, kdbench on "
          f"{config['device']}")
    print(f"{'method':44} {'median ms per case':>19}")
    print(f"{'MedPy-style baseline (scipy EDT, whole volume)':44} "
          f"{results['baseline']['median_ms']:19.1f}")
    print(f"{'kdbench score_case':44} {results['kdbench']['median_ms']:19.1f}")
    goals = report["goals"]
    note = "" if goals["evaluated"] else "  (goals apply to brats size)"
    print(f"baseline / kdbench = {report['ratios']['baseline_over_kdbench']:.2f} "
          f"(goal >= {goals['baseline_over_kdbench']}){note}; values agree to "
          f"{report['max_abs_difference']:.2g}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=list(SIZES), default="small",
                        help="volume preset: brats = 240×240×155 (default small)")
    parser.add_argument("--device", help="kdbench's distance device: cpu, cuda, auto "
                                         "(default auto: CUDA when available)")
    parser.add_argument("--cases", type=int, help="synthetic pairs (default: the preset's)")
    parser.add_argument("--repeats", type=int, help="timed passes over the pairs")
    parser.add_argument("--seed", type=int, default=0)
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
