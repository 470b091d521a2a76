"""``kdbench export`` and ``kdbench predict`` on the session grid's Jobs (mono, and kd with its
multi teacher): a copied model folder with no runs/, MLflow or data beside it predicts new
cases from the T1ce file alone; the same images give the labels of the Job's own in-process
prediction; a case without T1ce, a changed weight byte and an existing output are refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import run_cli

from kdbench.engine.job import finished


def _folder_args(grid) -> list[str]:
    ref = grid.reference
    return ["--data-dir", str(ref.data_dir), "--runs-dir", str(ref.runs_dir)]


def _job(grid, component):
    return next(j for j in grid.plan.jobs if j.component == component)


@pytest.fixture(scope="module")
def exported(grid, tmp_path_factory):
    """mono and kd exported through the CLI, then copied to a folder of their own."""
    root = tmp_path_factory.mktemp("exported")
    out = {}
    for component in ("mono", "kd"):
        job = _job(grid, component)
        target = root / "first" / component
        args = ["export", str(grid.protocol), "--strategy", component, "--n", str(job.n),
                "--seed", str(job.seed), "--out", str(target), *_folder_args(grid)]
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        assert f"Job {job.id}" in result.stdout
        moved = root / "elsewhere" / component
        shutil.copytree(target, moved)
        out[component] = moved
    shutil.rmtree(root / "first")
    return out


def _t1ce_only_release(source: Path, cases: list[str], dest: Path) -> Path:
    """A BraTS 2021-layout folder holding only each case's T1ce image."""
    for case in cases:
        (dest / case).mkdir(parents=True)
        shutil.copyfile(source / case / f"{case}_t1ce.nii.gz", dest / case / f"{case}_t1ce.nii.gz")
    return dest


def test_export_is_a_self_contained_reproducible_folder(exported, grid, tmp_path):
    folder = exported["kd"]
    manifest = json.loads((folder / "kdbench_model.json").read_text())
    assert manifest["accepts"] == [["t1ce"]] and manifest["label_convention"] == "brats2021"
    assert manifest["model"]["component"] == "kd"
    assert manifest["model"]["dependencies"]["teacher"]["component"] == "multi"
    weights = manifest["backbone"]["export"]["weights"]
    assert set(weights) == {"model", "model/teacher"}
    for rel in weights.values():
        assert (folder / "backbone" / rel).read_bytes()[:8] != b"PK\x03\x04"  # not a pickle zip
    sums = dict(reversed(line.split("  ", 1)) for line in
                (folder / "SHA256SUMS").read_text().splitlines())
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(sums) == files - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    card = json.loads((folder / "model_card.json").read_text())
    job = _job(grid, "kd")
    per_case = finished(grid.reference.runs_dir, grid.plan, job).path / "per_case.csv"
    import pandas as pd

    table = pd.read_csv(per_case)
    wt = table[(table.region == "WT") & (table.metric == "dice")]["value"]
    entry = card["test"]["scores"]["t1ce"]["WT"]["dice"]
    assert entry["mean"] == pytest.approx(wt.mean(), abs=1e-6) and entry["cases"] == len(wt)
    assert "conditional on this trained model" in card["test"]["ci"]
    text = (folder / "MODEL_CARD.md").read_text()
    assert job.id in text and "Intended use" in text and "Limits" in text
    # the same Job exports the same bytes, also as a zip
    again = [tmp_path / f"again{i}.zip" for i in range(2)]
    for path in again:
        result = run_cli("export", str(grid.protocol), "--job", job.id, "--out", str(path),
                         "--zip", *_folder_args(grid))
        assert result.returncode == 0, result.stderr
    assert again[0].read_bytes() == again[1].read_bytes()
    import zipfile

    with zipfile.ZipFile(again[0]) as zf:
        assert zf.read("SHA256SUMS").decode() == (folder / "SHA256SUMS").read_text()
    # never over an existing export
    result = run_cli("export", str(grid.protocol), "--job", job.id, "--out", str(again[0]),
                     "--zip", *_folder_args(grid))
    assert result.returncode != 0 and "exists" in result.stderr and "--overwrite" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("component", ["mono", "kd"])
def test_prediction_from_t1ce_alone_matches_the_jobs_own(exported, grid, tmp_path, component):
    """The test cases' T1ce files alone, predicted from the copied folder in a folder with no
    runs/, mlruns/ or data: the labels of the Job's in-process prediction from the prepared
    four-channel data, voxel for voxel, in each input's geometry."""
    from kdbench.data.prepared import PreparedDataset

    job = _job(grid, component)
    done = finished(grid.reference.runs_dir, grid.plan, job)
    test_cases = done.record["test_cases"]
    prepared = PreparedDataset.open(next(grid.data_dir.glob("*/prepared.json")).parent)
    source = Path(prepared.marker["source"])
    work = tmp_path / "clinic"
    release = _t1ce_only_release(source, test_cases, work / "cases")
    result = run_cli("predict", "--model", str(exported[component]), "--input", str(release),
                     "--output", str(work / "out"), cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"{len(test_cases)} case(s) predicted from t1ce" in result.stdout
    assert not any((work / d).exists() for d in ("runs", "mlruns", "data"))
    for case in test_cases:
        ours = nib.load(work / "out" / f"{case}.nii.gz")
        job_own = nib.load(done.predictions(("t1ce",)) / f"{case}.nii.gz")
        image = nib.load(release / case / f"{case}_t1ce.nii.gz")
        assert ours.shape == image.shape and np.allclose(ours.affine, image.affine)
        np.testing.assert_array_equal(np.asanyarray(ours.dataobj),
                                      np.asanyarray(job_own.dataobj))
        assert set(np.unique(np.asanyarray(ours.dataobj))) <= {0, 1, 2, 4}


def test_new_cases_of_another_geometry_and_a_case_without_t1ce(exported, tmp_path):
    """Fresh phantom cases of another seed and grid (other spacing: resampled to the plans'
    and back) from T1ce alone, beside a case that has only FLAIR: that one is refused by
    name with the file it lacks, the others are written, the exit is non-zero."""
    from kdbench_plugins.phantom import generate_phantom

    source = generate_phantom(tmp_path / "fresh", cases=3, shape=(40, 36, 32), seed=7)
    cases = sorted(p.name for p in source.iterdir() if p.is_dir())
    release = _t1ce_only_release(source, cases[:2], tmp_path / "cases")
    (release / cases[2]).mkdir()
    shutil.copyfile(source / cases[2] / f"{cases[2]}_flair.nii.gz",
                    release / cases[2] / f"{cases[2]}_flair.nii.gz")
    out = tmp_path / "out"
    result = run_cli("predict", "--model", str(exported["mono"]), "--input", str(release),
                     "--output", str(out), "--labels", "brats2023")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert cases[2] in result.stderr and f"{cases[2]}_t1ce.nii.gz" in result.stderr
    assert "1 case(s) not predicted" in result.stderr
    for case in cases[:2]:
        ours = nib.load(out / f"{case}.nii.gz")
        image = nib.load(release / case / f"{case}_t1ce.nii.gz")
        assert ours.shape == image.shape == (40, 36, 32)
        assert np.allclose(ours.affine, image.affine)
        assert set(np.unique(np.asanyarray(ours.dataobj))) <= {0, 1, 2, 3}
    assert not (out / f"{cases[2]}.nii.gz").exists()
    # an existing output is never overwritten without --overwrite
    before = (out / f"{cases[0]}.nii.gz").stat().st_mtime_ns
    result = run_cli("predict", "--model", str(exported["mono"]), "--input", str(release),
                     "--output", str(out))
    assert result.returncode != 0 and "--overwrite" in result.stderr
    assert (out / f"{cases[0]}.nii.gz").stat().st_mtime_ns == before


def test_a_changed_weight_byte_is_refused_before_loading(exported, tmp_path):
    folder = tmp_path / "tampered"
    shutil.copytree(exported["mono"], folder)
    weights = folder / "backbone" / "model" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    os.utime(weights)
    result = run_cli("predict", "--model", str(folder), "--input", str(tmp_path),
                     "--output", str(tmp_path / "out"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "weights.safetensors does not match its sha256" in result.stderr
    assert not (tmp_path / "out").exists()
