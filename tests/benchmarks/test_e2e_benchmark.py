"""The end-to-end benchmark runs and reports what it promises (a benchmark, not a timed test:
no assertion here is on a timing)."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "e2e_benchmark.py"


def test_e2e_benchmark_tiny_cpu(tmp_path):
    out = tmp_path / "e2e.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "tiny", "--device", "cpu", "--steps", "2",
         "--warmup", "1", "--workers", "1", "--cases", "3", "--data-processes", "1",
         "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "(i)" in done.stdout and "(ii)" in done.stdout
    report = json.loads(out.read_text())

    results = report["results"]
    for variant in ("kdbench_gpu_only", "step_only", "kdbench_e2e", "nnunet_e2e"):
        assert results[variant]["iterations_per_s"] > 0, variant
        assert results[variant]["rounds"] == 2

    ratios = report["ratios"]
    assert ratios["e2e_over_gpu_only"] == (results["kdbench_e2e"]["iterations_per_s"]
                                           / results["kdbench_gpu_only"]["iterations_per_s"])
    assert ratios["kdbench_over_nnunet"] == (results["kdbench_e2e"]["iterations_per_s"]
                                             / results["nnunet_e2e"]["iterations_per_s"])

    config = report["config"]
    assert config["size"] == "tiny" and config["device"] == "cpu" and config["workers"] == 1
    # nnU-Net's preprocessing cropped the phantom's cases to the brain; the loader's crops
    # are nnU-Net's initial patch, larger than the patch (rotation and scaling need room)
    assert config["cases"] == 3 and all(len(s) == 4 and s[0] == 4 for s in config["case_shapes"])
    assert all(i > p for i, p in zip(config["initial_patch_size"], config["patch_size"],
                                     strict=True))
    assert report["goals"]["evaluated"] is False and report["goals"]["met"] is None
    info = report["machine_info"]
    assert info["torch_version"] and info["nnunetv2_version"] and info["cpu_count"]
    assert "commit_info" in report and "datetime" in report
