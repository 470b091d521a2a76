"""The benchmark suite runs every benchmark at tiny size on a CPU and reports every ratio (a
benchmark, not a timed test: no assertion is on a timing)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT

from kdbench.calibration import load_calibration
from kdbench.estimate import estimate
from kdbench.plan import build_plan
from kdbench.protocol import load_protocol

SCRIPT = ROOT / "benchmarks" / "run_all.py"


def test_suite_tiny_cpu_reports_every_ratio(tmp_path, registry):
    out = tmp_path / "suite.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--size", "tiny", "--device", "cpu",
                           "--json", str(out)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    suite = json.loads(out.read_text())
    table = {row["ratio"]: row for row in suite["table"]}
    for ratio in ("kdbench_over_nnunet", "kd_over_student", "kdbench_over_naive",
                  "baseline_over_kdbench"):
        assert table[ratio]["value"] > 0, ratio
        assert ratio in done.stdout
    assert {row["p"] for row in suite["table"]} >= {"P1", "P2", "P4", "P5"}
    e2e = suite["reports"]["e2e_benchmark"]
    assert "error" not in e2e and [r for r in suite["table"] if r["p"] == "P3"]
    # P4 is kdbench's own estimate of the learning curve with the reference calibration, with
    # its fast paths (GPU augmentation, compiled)
    plan = build_plan(load_protocol(ROOT / "protocols" / "brats2021_learning_curve.yaml",
                                    registry), registry)
    assert table["kdbench_over_naive"]["value"] == pytest.approx(
        estimate(plan, registry, load_calibration(), augmentation="gpu", compile=True).ratio)
    # P5: both scorings agree on every value
    assert suite["reports"]["scoring_benchmark"]["max_abs_difference"] < 1e-6
    assert suite["machine_info"]["torch_version"] and suite["commit_info"]["id"]
    assert suite["size"] == "tiny" and suite["datetime"]
