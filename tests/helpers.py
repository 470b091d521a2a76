"""Helpers shared by tests (importable because pytest puts tests/ on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "protocols" / "demo.yaml"

#: The demo's structure on the 24-case phantom (8 for test, a pool of 16) at N = 4 and 12, two
#: seeds, in 3d_fullres with 16³ patches and 25 epochs of 25 iterations: what the tests that
#: edit the demo count with, whatever the shipped demo's world and budget.
CLASSIC_DEMO: dict[str, Any] = {
    "dataset": {"source": "phantom", "options": {"cases": 24, "shape": [48, 48, 48], "seed": 0}},
    "split": {"test_size": 8, "seed": 0, "validation_fraction": 0.25},
    "training_sizes": [4, 12],
    "seeds": [0, 1],
    "backbone": {"name": "nnunet", "options": {
        "patch_size": [16, 16, 16], "batch_size": 2, "features_per_stage": [16, 32, 64, 128],
        "mirroring": False}},
    "training": {"epochs": 25, "iterations_per_epoch": 25, "val_iterations": 2,
                 "validate_every": 1, "checkpoint_every": 10},
}


def demo_dict() -> dict[str, Any]:
    """The demo protocol as a dict with :data:`CLASSIC_DEMO`'s data, sizes and backbone."""
    import copy

    import yaml

    data = yaml.safe_load(DEMO.read_text())
    data.update(copy.deepcopy(CLASSIC_DEMO))
    return data


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kdbench ARGS`` as a user would, capturing output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KDBENCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kdbench", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, timeout=300,
    )


def prepared_source(prepared: Any) -> dict[str, str]:
    """A protocol's ``dataset`` field reading the session's prepared phantom (the
    ``prepared_phantom`` fixture) as the BraTS release it was prepared from: with the
    prepared folder's parent as data folder, nothing is prepared again."""
    return {"source": "brats", "path": str(prepared.marker["source"]),
            "name": prepared.path.name}


def phantom_protocol(folder: Path, name: str, *, cases: int = 10, **fields: object) -> Path:
    """The demo protocol on a small phantom (``cases`` at 32³, 2 test cases, N = 6, seed 0,
    T1ce-only, 3d_fullres with 16³ patches, 2 epochs of 2 iterations, Dice only, no primary
    endpoint), top-level keys
    replaced by ``fields``;
    written to ``folder / f"{name}.yaml"``."""
    import yaml

    data = demo_dict()
    data.update(
        name=name,
        dataset={"source": "phantom", "options": {"cases": cases, "shape": [32, 32, 32]}},
        split={"test_size": 2, "validation_fraction": 0.25},
        training_sizes=[6], seeds=[0],
        scenarios=[{"name": "t1ce_only", "available": ["t1ce"]}],
        training={"epochs": 2, "iterations_per_epoch": 2, "val_iterations": 1},
        metrics=["dice"],
        # the demo's statistics without its primary endpoint (tests change the strategies)
        # and with the margin of the one metric scored here
        statistics={**data["statistics"], "margin": {"dice": 0.02}, "primary": None},
    )
    data.update(fields)
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
