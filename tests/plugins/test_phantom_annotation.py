"""Annotation noise on the phantom (issue 24, item 1): training and validation read a rater's
noisy annotation, the test set is scored on the true labels, and without the option the files
are those of the phantom before it existed."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kdbench_plugins.phantom import LabelNoiseOptions, PhantomOptions, generate_phantom
from kdbench_plugins.phantom.annotation import LabelNoise

ROOT = Path(__file__).resolve().parents[2]
#: The last commit whose phantom had no annotation-noise option: its generator is the
#: independent reference of "noise off gives today's files".
BEFORE = "5327859"
NOISE = LabelNoise(boundary_mm=4.0, correlation_mm=15.0, lobe_drop_p=0.5, lobe_mm=10.0)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _arrays(folder: Path, cid: str, suffix: str) -> np.ndarray:
    return np.asarray(nib.load(folder / cid / f"{cid}_{suffix}.nii.gz").dataobj)


def _old_generator(tmp_path: Path) -> Path:
    """The phantom package of commit BEFORE, importable as ``phantom_before``."""
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{BEFORE}^{{commit}}"],
                      capture_output=True).returncode != 0:
        pytest.skip(f"commit {BEFORE} is not in this checkout's history")
    tmp_path.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "plugins/phantom"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    package = tmp_path / "phantom_before"
    (tmp_path / "plugins" / "phantom").rename(package)
    for source in package.glob("*.py"):
        source.write_text(re.sub(r"kdbench_plugins\.phantom", "phantom_before",
                                 source.read_text()))
    return tmp_path


def test_without_noise_the_files_are_those_of_the_phantom_before_the_option(tmp_path):
    old = _old_generator(tmp_path / "old")
    script = ("import sys; sys.path.insert(0, sys.argv[1]); "
              "from phantom_before import generate_phantom; "
              "generate_phantom(sys.argv[2], cases=3, shape=(24, 28, 24), seed=3, "
              "anatomy='procedural')")
    subprocess.run([sys.executable, "-c", script, str(old), str(tmp_path / "before")],
                   check=True)
    generate_phantom(tmp_path / "now", cases=3, shape=(24, 28, 24), seed=3,
                     anatomy="procedural")
    assert _digests(tmp_path / "now") == _digests(tmp_path / "before")
    # and the option left unset does not enter the dataset's (hence the Jobs') identity
    assert "label_noise" not in PhantomOptions().model_dump(mode="json")
    assert PhantomOptions(label_noise={}).model_dump(mode="json")["label_noise"] == {
        "boundary_mm": 4.0, "correlation_mm": 15.0, "lobe_drop_p": 0.3, "lobe_mm": 10.0}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotation")
    clean = generate_phantom(root / "clean", cases=4, shape=(48, 48, 48), seed=1,
                             anatomy="procedural")
    noisy = generate_phantom(root / "noisy", cases=4, shape=(48, 48, 48), seed=1,
                             anatomy="procedural", label_noise=NOISE)
    return clean, noisy


def test_the_annotation_is_the_truth_drawn_off_and_the_images_are_unchanged(noisy):
    clean, noise = noisy
    wt_dice = []
    for i in range(4):
        cid = f"BraTS2021_{i:05d}"
        for m in ("t1", "t1ce", "t2", "flair"):
            assert np.array_equal(_arrays(clean, cid, m), _arrays(noise, cid, m))
        truth = _arrays(noise, cid, "seg_reference")
        annotation = _arrays(noise, cid, "seg")
        assert np.array_equal(truth, _arrays(clean, cid, "seg"))  # the true labels
        assert not np.array_equal(annotation, truth)
        assert set(np.unique(annotation)) <= {0, 1, 2, 4}
        # the regions stay nested: enhancing and necrotic voxels lie inside the whole tumour
        a, t = annotation > 0, truth > 0
        wt_dice.append(2 * (a & t).sum() / (a.sum() + t.sum()))
    # a rater's whole tumour against the truth: BraTS's inter-rater range is about 0.85-0.9
    assert 0.75 < np.mean(wt_dice) < 0.97, wt_dice
    manifest = (noise / "phantom.json").read_text()
    assert '"seg_reference": "the true labels' in manifest


@pytest.mark.slow  # about 45 s: the noisy phantom prepared through nnU-Net
def test_training_reads_the_annotation_and_scoring_the_truth(noisy, registry, tmp_path,
                                                             prepared_phantom):
    from kdbench.cases import LABEL_MAPS
    from kdbench.data.prepare import prepare_dataset
    from kdbench.data.prepared import PreparedDataset

    _, noise = noisy
    result = prepare_dataset(registry, noise, "noisy", tmp_path / "data")
    dataset = PreparedDataset.open(result.path)
    label_map = LABEL_MAPS["brats2021"]
    differs = 0
    for cid in dataset.cases:
        assert dataset.reference(cid) == noise / cid / f"{cid}_seg_reference.nii.gz"
        assert dataset.label(cid) == noise / cid / f"{cid}_seg.nii.gz"
        annotation = _arrays(noise, cid, "seg")
        truth = _arrays(noise, cid, "seg_reference")
        # every label the backbone prepared (nnU-Net's raw labels and its gt_segmentations)
        # is the annotation, in nnU-Net's label values, never the truth
        prepared = sorted(result.path.rglob(f"{cid}.nii.gz"))
        assert len(prepared) >= 2
        for path in prepared:
            values = np.asarray(nib.load(path).dataobj)
            expected = np.vectorize(lambda v: label_map.get(int(v), int(v)))(annotation)
            assert np.array_equal(values.reshape(expected.shape), expected), path
        differs += not np.array_equal(annotation, truth)
    assert differs == len(dataset.cases)
    # a Job's scoring: predictions equal to the truth score Dice 1, the annotation does not
    import shutil
    from types import SimpleNamespace

    from kdbench.metrics.job_scores import score_job

    cases = tuple(dataset.cases)
    scores = {}
    for name, suffix in (("truth", "seg_reference"), ("annotation", "seg")):
        folder = tmp_path / name
        folder.mkdir()
        for cid in cases:
            shutil.copy(noise / cid / f"{cid}_{suffix}.nii.gz", folder / f"{cid}.nii.gz")
        result = SimpleNamespace(predictions=lambda subset, f=folder: f, synthesis=None)
        job = SimpleNamespace(modalities=SimpleNamespace(evaluate=(("t1ce",),)))
        data = SimpleNamespace(dataset=dataset, splits=SimpleNamespace(test=cases))
        table, _ = score_job(result, job, data, registry, ["dice"])
        scores[name] = table[table["region"] == "WT"]["value"]
    assert (scores["truth"] == 1.0).all()
    assert (scores["annotation"] < 1.0).all()
    # a dataset without a reference scores its label, and its case list has no new key
    plain = prepared_phantom
    cid = next(iter(plain.cases))
    assert plain.reference(cid) == plain.label(cid)
    assert '"reference"' not in (plain.path / "cases.json").read_text()


def test_options_validate_the_rater_model():
    from pydantic import ValidationError

    assert LabelNoiseOptions().lobe_drop_p == 0.3
    with pytest.raises(ValidationError, match="lobe_drop_p"):
        PhantomOptions(label_noise={"lobe_drop_p": 2})
    with pytest.raises(ValidationError, match="extra"):
        PhantomOptions(label_noise={"boundry_mm": 1})
