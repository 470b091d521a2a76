"""The step benchmark runs and reports what it promises (a benchmark, not a timed test: no
assertion here is on a timing)."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "step_benchmark.py"


def test_step_benchmark_tiny_cpu(tmp_path):
    out = tmp_path / "step.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "tiny", "--device", "cpu", "--steps", "2",
         "--warmup", "1", "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "b/a" in done.stdout and "c/student" in done.stdout
    report = json.loads(out.read_text())

    results = report["results"]
    for variant in ("nnunet", "kdbench", "kd", "student", "teacher"):
        assert results[variant]["median_ms"] > 0, variant
        assert results[variant]["rounds"] == 2
    # (a) and (b) train the same network; the KD student is the mono student's network
    assert results["nnunet"]["parameters"] == results["kdbench"]["parameters"] > 0
    assert results["kd"]["parameters"] == results["student"]["parameters"] > 0

    ratios = report["ratios"]
    for name in ("kdbench_over_nnunet", "kd_over_student", "teacher_share_of_kd"):
        assert ratios[name] > 0 and ratios["paired"][name] > 0

    assert report["config"]["size"] == "tiny" and report["config"]["device"] == "cpu"
    assert report["goals"]["evaluated"] is False  # goals are for brats on a GPU
    info = report["machine_info"]
    assert info["torch_version"] and info["nnunetv2_version"] and info["cpu_count"]
    assert "commit_info" in report and "datetime" in report
