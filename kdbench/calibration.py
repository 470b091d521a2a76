"""Calibrations of the GPU-hour estimate (``kdbench plan --estimate``): what one training step,
one validation step and one test case cost on one device.

A calibration is a JSON file (``kdbench_calibration: 1``): ``step_ms`` (the 4-channel train
step, the 1-channel student step, the KD step, the teacher's forward, a validation step;
optionally the compiled train and KD steps), ``case_s`` (prediction and scoring of one test
case), optionally ``input`` (nnU-Net's CPU augmentation of one batch on one core, kdbench's GPU
augmentation of one batch, the data workers per GPU), and what was measured and how. The
shipped reference (H100 figures) is labelled as such; ``--calibrate`` measures one with the
benchmarks of a checkout of kdbench's repository (:func:`measure_calibration`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.errors import KdbenchError

#: Schema version of calibration files.
CALIBRATION_VERSION = 1
#: The checkout's benchmarks folder (absent from an installed wheel).
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: The shipped reference figures: package data, so ``plan --estimate`` works from a wheel.
REFERENCE_CALIBRATION = Path(__file__).resolve().parent / "h100_reference.json"
#: Where ``--calibrate`` stores what it measured (``runs/`` is git-ignored).
CALIBRATION_DIR = Path("runs") / "calibration"
STEP_KEYS = ("train", "student", "kd", "teacher_forward", "validation")
#: Optional compiled step figures (``torch.compile``), used with ``compile``.
COMPILED_KEYS = ("train_compiled", "kd_compiled")
CASE_KEYS = ("predict", "score")
#: Optional input-pipeline figures (see :mod:`kdbench.estimate`).
INPUT_KEYS = ("cpu_augment_s", "gpu_augment_ms", "data_workers")

@dataclass(frozen=True)
class Calibration:
    """Measured (or reference) costs on one device.

    Attributes:
        device: the device's name.
        label: what the figures are, in words (a reference says so).
        reference: ``True`` for the shipped reference figures, not measured on this machine.
        step_ms: milliseconds per step: ``train`` (4-channel network), ``student`` (1 channel),
            ``kd`` (student + teacher), ``teacher_forward``, ``validation``; optionally
            ``train_compiled`` and ``kd_compiled`` (with ``torch.compile``).
        case_s: seconds per test case: ``predict`` (sliding window + export), ``score``.
        input: optional: ``cpu_augment_s`` (nnU-Net's augmentation of one batch on one CPU
            core), ``gpu_augment_ms`` (kdbench's GPU augmentation of one batch),
            ``data_workers`` (augmentation workers per GPU); empty: the loader keeps up.
        network: the network and batch measured (patch, batch, features, AMP, compile).
        date: when it was measured.
        sources: how each figure was obtained (measured, derived, assumed).
        path: the file it was read from.
    """

    device: str
    label: str
    reference: bool
    step_ms: dict[str, float]
    case_s: dict[str, float]
    input: dict[str, float] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    date: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def from_json(cls, data: Any, where: str) -> Calibration:
        """Check and read a calibration (``where`` names it in error messages)."""
        if not isinstance(data, dict) or data.get("kdbench_calibration") != CALIBRATION_VERSION:
            raise KdbenchError(f"{where}: not a kdbench calibration (expected the key "
                               f"kdbench_calibration: {CALIBRATION_VERSION}); write one with "
                               "`kdbench plan P --estimate --calibrate`")
        values = {}
        for section, keys in (("step_ms", STEP_KEYS), ("case_s", CASE_KEYS)):
            given = data.get(section)
            if not isinstance(given, dict):
                raise KdbenchError(f"{where}: field {section!r} is missing; it needs "
                                   f"{', '.join(keys)}")
            for key in keys:
                value = given.get(key)
                if isinstance(value, bool) or not isinstance(value, int | float) or \
                        not math.isfinite(value) or value < 0:
                    raise KdbenchError(f"{where}: field {section}.{key} must be a number >= 0, "
                                       f"got {value!r}")
            values[section] = {k: float(given[k]) for k in keys}
        values["step_ms"].update(_optional(data.get("step_ms"), "step_ms", COMPILED_KEYS, where))
        given_input = data.get("input")
        if given_input is not None and not isinstance(given_input, dict):
            raise KdbenchError(f"{where}: field 'input' must be a mapping of "
                               f"{', '.join(INPUT_KEYS)}")
        values["input"] = _optional(given_input, "input", INPUT_KEYS, where)
        if values["input"] and set(values["input"]) != set(INPUT_KEYS):
            missing = sorted(set(INPUT_KEYS) - set(values["input"]))
            raise KdbenchError(f"{where}: field 'input' needs all of {', '.join(INPUT_KEYS)}; "
                               f"missing {', '.join(missing)}")
        if values["input"] and values["input"]["data_workers"] < 1:
            raise KdbenchError(f"{where}: field input.data_workers must be >= 1")
        device = data.get("device")
        if not isinstance(device, str) or not device:
            raise KdbenchError(f"{where}: field 'device' must name the device measured")
        return cls(device=device, label=str(data.get("label") or device),
                   reference=bool(data.get("reference", False)), step_ms=values["step_ms"],
                   case_s=values["case_s"], input=values["input"],
                   network=dict(data.get("network") or {}),
                   date=data.get("date"), sources=dict(data.get("sources") or {}))

    def to_json(self) -> dict[str, Any]:
        """The file form (``path`` is where it was read from, not stored)."""
        return {"kdbench_calibration": CALIBRATION_VERSION, "reference": self.reference,
                "label": self.label, "device": self.device, "date": self.date,
                "network": self.network, "step_ms": self.step_ms, "case_s": self.case_s,
                **({"input": self.input} if self.input else {}), "sources": self.sources}

    @property
    def compiled(self) -> bool:
        """Whether it has compiled step figures."""
        return all(key in self.step_ms for key in COMPILED_KEYS)


def _optional(given: Any, section: str, keys: tuple[str, ...], where: str) -> dict[str, float]:
    """The optional numeric ``keys`` of ``given`` (each a finite number >= 0)."""
    out = {}
    for key in keys:
        value = (given or {}).get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not math.isfinite(value) or value < 0:
            raise KdbenchError(f"{where}: field {section}.{key} must be a number >= 0, "
                               f"got {value!r}")
        out[key] = float(value)
    return out


def load_calibration(path: Path | None = None) -> Calibration:
    """The calibration in ``path``, by default the shipped reference.

    Raises:
        KdbenchError: no such file, not JSON, or a missing or bad field (named).
    """
    path = Path(path) if path is not None else REFERENCE_CALIBRATION
    if not path.is_file():
        hint = ("the reference calibration is package data of kdbench "
                "(kdbench/h100_reference.json): reinstall kdbench, or give --calibration FILE "
                "or measure with --calibrate"
                if path == REFERENCE_CALIBRATION else "give an existing file or --calibrate")
        raise KdbenchError(f"calibration file {path} not found; {hint}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise KdbenchError(f"calibration file {path} is not JSON: {exc}") from exc
    calibration = Calibration.from_json(data, f"calibration file {path}")
    return Calibration(**{**calibration.__dict__, "path": path})


def calibration_path(device: str, folder: Path = CALIBRATION_DIR) -> Path:
    """``runs/calibration/<device>.json`` (the name made file-safe)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower() or "device"
    return Path(folder) / f"{slug}.json"


def save_calibration(calibration: Calibration, folder: Path = CALIBRATION_DIR) -> Path:
    """Write a measured calibration to :func:`calibration_path` (atomically); return it."""
    path = calibration_path(calibration.device, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(calibration.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path


def measure_calibration(size: str = "brats", device: str | None = None, steps: int = 10,
                        warmup: int = 3) -> Calibration:
    """Measure a calibration on this machine with the checkout's ``benchmarks/calibrate.py``
    (the step benchmark's train, student, KD and teacher steps, and one case scored).

    Raises:
        KdbenchError: kdbench runs from an installed wheel without its benchmarks folder.
    """
    script = BENCHMARKS / "calibrate.py"
    if not script.is_file():
        raise KdbenchError(f"--calibrate runs {script}, which is not here (kdbench installed "
                           "without its repository); run it from a checkout, or give "
                           "--calibration FILE")
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("kdbench_calibrate", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = module.measure(size=size, device=device, steps=steps, warmup=warmup)
    return Calibration.from_json(data, f"the calibration measured by {script}")
