"""Measure a calibration for ``kdbench plan P --estimate``: a short step benchmark and one
scored case on this machine's device.

- ``step_ms``: medians of the step benchmark's variants (``step_benchmark.py``): ``train`` =
  kdbench's 4-channel train step (``multi``), ``student`` = the 1-channel ``mono`` step,
  ``kd`` = the KD step, ``teacher_forward`` = the teacher's forward; ``validation`` is taken
  equal to ``teacher_forward`` (one forward pass at the training batch).
- ``case_s.predict``: derived: the sliding-window tiles of a BraTS case cropped to the brain
  (nnU-Net's median 140×171×136, scaled with the preset's patch), half-patch steps, 8
  mirrorings, each tile costing ``teacher_forward / batch``, plus resampling and NIfTI export
  (:data:`EXPORT_S`, assumed, scaled by the volume).
- ``case_s.score``: measured: kdbench's scoring of one synthetic pair of the preset's volume
  (``scoring_benchmark.py``), on the metrics device (``KDBENCH_METRICS_DEVICE``, default CPU).

Run from the repository root (or through ``kdbench plan P --estimate --calibrate``)::

    python benchmarks/calibrate.py --size brats --json runs/calibration/mine.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: siblings beside

import scoring_benchmark  # noqa: E402
import step_benchmark  # noqa: E402

#: nnU-Net's median BraTS case after cropping to the brain (voxels), at the brats preset.
BRATS_CROPPED = (140, 171, 136)
#: Seconds to resample a BraTS prediction and write it (assumed; scaled by the volume).
EXPORT_S = 2.0
#: The scored volume per preset (as the scoring benchmark's).
SCORED_SHAPE = {name: preset["shape"] for name, preset in scoring_benchmark.SIZES.items()}


def tiles(shape: tuple[int, ...], patch: int, step: float = 0.5) -> int:
    """nnU-Net's number of sliding-window tiles (``compute_steps_for_sliding_window``)."""
    count = 1
    for size in shape:
        count *= 1 if size <= patch else math.ceil((size - patch) / (patch * step)) + 1
    return count


def measure(size: str = "brats", device: str | None = None, steps: int = 10,
            warmup: int = 3) -> dict[str, Any]:
    """A calibration dict (``kdbench.calibration.Calibration`` form) measured now."""
    args = step_benchmark.parse_args(["--size", size, "--steps", str(steps),
                                      "--warmup", str(warmup),
                                      *(["--device", device] if device else [])])
    with tempfile.TemporaryDirectory(prefix="kdbench_calibrate_") as workdir:
        report = step_benchmark.run(args, Path(workdir))
    median = {name: result["median_ms"] for name, result in report["results"].items()}
    config, info = report["config"], report["machine_info"]
    patch, batch = config["patch_size"][0], config["batch_size"]
    scale = patch / step_benchmark.SIZES["brats"]["patch"]
    cropped = tuple(max(patch, round(s * scale)) for s in BRATS_CROPPED)
    n_tiles = tiles(cropped, patch)
    export_s = EXPORT_S * math.prod(SCORED_SHAPE[size]) / math.prod(SCORED_SHAPE["brats"])
    predict_s = n_tiles * 8 * median["teacher"] / batch / 1e3 + export_s

    from kdbench.metrics.surface import resolve_device
    from kdbench_plugins.brats_metrics import Dice, Hd95

    pair = scoring_benchmark.make_case(tuple(SCORED_SHAPE[size]), 0)
    metrics = [Dice(), Hd95()]
    scoring_benchmark.score_kdbench(*pair, metrics)  # warm-up
    begin = time.perf_counter()
    scoring_benchmark.score_kdbench(*pair, metrics)
    score_s = time.perf_counter() - begin
    metrics_device = resolve_device()
    name = info["device_name"]
    return {
        "kdbench_calibration": 1,
        "reference": False,
        "label": f"measured on {name} ({config['device']}), step benchmark preset {size}",
        "device": name,
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "network": {"patch": config["patch_size"], "batch": batch,
                    "features": config["features_per_stage"], "amp": config["amp"],
                    "compile": config["compile"], "preset": size},
        "step_ms": {"train": median["kdbench"], "student": median["student"], "kd": median["kd"],
                    "teacher_forward": median["teacher"], "validation": median["teacher"]},
        "case_s": {"predict": predict_s, "score": score_s},
        "sources": {
            "step_ms": f"measured: step_benchmark.py --size {size}, median of {steps} steps "
                       f"after {warmup} warm-up (validation = teacher_forward, assumed)",
            "case_s.predict": f"derived: {n_tiles} tiles of {patch}^3 over {cropped} x 8 "
                              f"mirrorings x teacher_forward / batch + {export_s:.2f} s export "
                              "(assumed)",
            "case_s.score": f"measured: one {SCORED_SHAPE[size]} case, Dice + HD95 of 3 "
                            f"regions, metrics device {metrics_device}",
        },
        "machine_info": info,
        "commit_info": report["commit_info"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=list(step_benchmark.SIZES), default="brats")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the calibration here")
    args = parser.parse_args(argv)
    calibration = measure(args.size, args.device, args.steps, args.warmup)
    text = json.dumps(calibration, indent=2) + "\n"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
        print(f"wrote {args.json}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
