"""Tests of the synthetic BraTS phantom dataset plugin (plugins/phantom)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydantic import ValidationError

from kdbench import KdbenchError
from kdbench_plugins.phantom import (
    PhantomDataset,
    PhantomOptions,
    build,
    generate_phantom,
    kdbench_register_datasets,
    writer,
)
from kdbench_plugins.phantom.anatomy import mni_paths

SUFFIXES = ("t1", "t1ce", "t2", "flair", "seg")
MODALITIES = ("t1", "t1ce", "t2", "flair")
REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}


def load_case(dest: Path, cid: str) -> dict[str, nib.Nifti1Image]:
    return {s: nib.load(dest / cid / f"{cid}_{s}.nii.gz") for s in SUFFIXES}


def case_arrays(dest: Path, cid: str) -> dict[str, np.ndarray]:
    return {s: np.asarray(img.dataobj) for s, img in load_case(dest, cid).items()}


def file_bytes(dest: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*.nii.gz"))}


def check_layout(dest: Path, cases: int, shape: tuple[int, int, int]) -> set[int]:
    """Assert the BraTS 2021 layout and value ranges; return the labels seen."""
    ids = [f"BraTS2021_{i:05d}" for i in range(cases)]
    assert sorted(p.name for p in dest.iterdir()) == sorted([*ids, "phantom.json"])
    seen: set[int] = set()
    for cid in ids:
        names = sorted(p.name for p in (dest / cid).iterdir())
        assert names == sorted(f"{cid}_{s}.nii.gz" for s in SUFFIXES)
        imgs = load_case(dest, cid)
        affine = imgs["seg"].affine
        assert affine[0, 0] < 0 and affine[1, 1] < 0 and affine[2, 2] > 0  # LPS voxel axes
        assert np.isclose(-affine[0, 0], affine[2, 2])  # isotropic
        for img in imgs.values():
            assert img.shape == shape
            np.testing.assert_array_equal(img.affine, affine)
        arrays = {s: np.asarray(img.dataobj) for s, img in imgs.items()}
        seg = arrays["seg"]
        assert seg.dtype == np.uint8
        assert set(np.unique(seg).tolist()) <= {0, 1, 2, 4}
        seen |= set(np.unique(seg).tolist())
        head = arrays["t1"] != 0
        for m in MODALITIES:
            assert arrays[m].dtype == np.int16
            assert np.isfinite(arrays[m]).all()
            assert arrays[m].min() == 0 and arrays[m].max() > 100
            # Skull-stripped like BraTS: every modality is zero exactly outside one brain mask.
            np.testing.assert_array_equal(arrays[m] != 0, head)
        assert 0.1 < head.mean() < 0.7
        border = np.ones(shape, dtype=bool)
        border[1:-1, 1:-1, 1:-1] = False
        assert not head[border].any()
        assert (seg > 0).any() and head[seg > 0].all()  # a tumour, inside the brain
    return seen


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_phantom(tmp_path_factory.mktemp("small") / "rel", 5, (40, 44, 40), seed=3)


def test_layout_and_values(small: Path) -> None:
    check_layout(small, 5, (40, 44, 40))
    manifest = json.loads((small / "phantom.json").read_text())
    assert manifest["options"] == {"cases": 5, "shape": [40, 44, 40], "seed": 3, "anatomy": "auto"}
    assert len(manifest["files"]) == 25


def test_determinism(small: Path, tmp_path: Path) -> None:
    again = generate_phantom(tmp_path / "again", 5, (40, 44, 40), seed=3)
    assert file_bytes(again) == file_bytes(small)
    assert (again / "phantom.json").read_bytes() == (small / "phantom.json").read_bytes()
    # Case k depends on (seed, k) only, not on how many cases there are.
    fewer = file_bytes(generate_phantom(tmp_path / "fewer", 3, (40, 44, 40), seed=3))
    assert len(fewer) == 15 and fewer == {k: v for k, v in file_bytes(small).items() if k in fewer}
    other = generate_phantom(tmp_path / "other", 2, (40, 44, 40), seed=4)
    for s in SUFFIXES:
        a = case_arrays(small, "BraTS2021_00000")[s]
        b = case_arrays(other, "BraTS2021_00000")[s]
        assert not np.array_equal(a, b)


def test_idempotent_and_refuses_other_content(tmp_path: Path) -> None:
    dest = tmp_path / "rel"
    options = PhantomOptions(cases=2, shape=(32, 32, 32), seed=1)
    assert PhantomDataset().generate(dest, options) == dest
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
    assert PhantomDataset().generate(dest, options) == dest
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before

    with pytest.raises(KdbenchError, match="seed") as err:
        PhantomDataset().generate(dest, options.model_copy(update={"seed": 2}))
    assert str(dest) in str(err.value)
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before

    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("mine")
    with pytest.raises(KdbenchError) as err:
        generate_phantom(unrelated, 2, (32, 32, 32))
    assert str(unrelated) in str(err.value)
    assert [p.name for p in unrelated.iterdir()] == ["notes.txt"]


def test_interrupted_run_leaves_no_complete_looking_case_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_nifti = writer.nifti_gz_bytes

    def failing(data: np.ndarray, affine: np.ndarray) -> bytes:
        calls.append(1)
        if len(calls) == 8:  # third file of the second case
            raise KeyboardInterrupt
        return real_nifti(data, affine)

    dest = tmp_path / "rel"
    monkeypatch.setattr(writer, "nifti_gz_bytes", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_phantom(dest, 3, (32, 32, 32))
    monkeypatch.undo()
    assert not (dest / "phantom.json").exists()
    assert (dest / "BraTS2021_00000").is_dir() and not (dest / "BraTS2021_00001").exists()

    generate_phantom(dest, 3, (32, 32, 32))
    fresh = generate_phantom(tmp_path / "fresh", 3, (32, 32, 32))
    check_layout(dest, 3, (32, 32, 32))
    assert file_bytes(dest) == file_bytes(fresh)
    assert (dest / "phantom.json").read_bytes() == (fresh / "phantom.json").read_bytes()


def test_procedural_and_auto_anatomy(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = generate_phantom(tmp_path / "proc", 3, (36, 36, 36), anatomy="procedural")
    assert check_layout(dest, 3, (36, 36, 36)) >= {2}
    assert json.loads((dest / "phantom.json").read_text())["anatomy_used"] == "procedural"
    expected = "mni" if mni_paths() is not None else "procedural"
    assert json.loads((small / "phantom.json").read_text())["anatomy_used"] == expected

    monkeypatch.setattr(build, "mni_paths", lambda: None)
    assert build.resolve_anatomy("auto") == "procedural"
    with pytest.raises(KdbenchError, match="nilearn.*procedural"):
        generate_phantom(tmp_path / "mni", 2, (32, 32, 32), anatomy="mni")


def test_tumours_vary() -> None:
    """Sizes and kinds vary: small and large cores, some low-grade-like cases without ET."""
    specs, volumes = [], []
    for index in range(40):
        tissues, seg, spec, _ = build.case_labels(index, 0, (32, 32, 32), "procedural")
        specs.append(spec)
        volumes.append(np.isin(seg, (1, 4)).sum() * tissues.spacing**3 / 1000)  # TC in ml
        assert ((seg == 4).any()) != spec.low_grade
    low_grade = sum(s.low_grade for s in specs)
    assert 2 <= low_grade <= 14
    assert min(volumes) < 5 and max(volumes) > 30
    assert any(s.rim_mm == s.core_radius_mm for s in specs)  # solid, non-necrotic cores


def test_options_validation() -> None:
    for bad in ({"shape": (23, 64, 64)}, {"cases": 1}, {"seed": -1}, {"anatomy": "x"}, {"k": 1}):
        with pytest.raises(ValidationError):
            PhantomDataset.validate_options(bad)
    options = PhantomDataset.validate_options({"cases": 7, "shape": [24, 30, 40]})
    assert options.shape == (24, 30, 40) and PhantomDataset.case_count(options) == 7
    assert PhantomDataset.validate_declaration() == []
    assert PhantomDataset.synthetic and PhantomDataset.name == "phantom"

    class Registry:
        def __init__(self) -> None:
            self.added: list[type] = []

        def add(self, cls: type) -> None:
            self.added.append(cls)

    registry = Registry()
    kdbench_register_datasets(registry)
    assert registry.added == [PhantomDataset]


def test_import_is_light() -> None:
    code = (
        "import sys, kdbench_plugins.phantom; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('scipy', 'nibabel', 'nilearn', 'torch', 'sklearn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- The scientific check: each modality carries the information it does in real MRI. -----


def voxel_features(arrays: dict[str, np.ndarray], modalities: tuple[str, ...]) -> np.ndarray:
    """Per-voxel features inside the brain: z-scored intensity and two smoothed versions."""
    from scipy.ndimage import gaussian_filter

    mask = arrays["t1"] != 0
    maskf = mask.astype(np.float32)
    columns = []
    for m in modalities:
        img = arrays[m].astype(np.float32)
        z = (img - img[mask].mean()) / img[mask].std() * maskf
        columns.append(z[mask])
        for sigma in (1.0, 2.5):
            smooth = gaussian_filter(z, sigma) / np.maximum(gaussian_filter(maskf, sigma), 1e-3)
            columns.append(smooth[mask])
    return np.stack(columns, axis=1)


def region_dice(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    out = {}
    for region, labels in REGIONS.items():
        p, t = np.isin(pred, labels), np.isin(truth, labels)
        out[region] = float(2 * (p & t).sum() / max(p.sum() + t.sum(), 1))
    return out


@pytest.fixture(scope="module")
def dice_table(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    """Pooled Dice of a per-voxel classifier per modality set, with two-fold cross-validation."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    n = 12
    dest = generate_phantom(tmp_path_factory.mktemp("dice") / "rel", n, (48, 48, 48), seed=0)
    cases = [case_arrays(dest, f"BraTS2021_{i:05d}") for i in range(n)]
    seen = set().union(*(np.unique(c["seg"]).tolist() for c in cases))
    assert seen == {0, 1, 2, 4}

    rng = np.random.default_rng(0)
    folds = (list(range(0, n, 2)), list(range(1, n, 2)))
    sets = {m: (m,) for m in MODALITIES} | {"all": MODALITIES}
    table = {}
    for name, mods in sets.items():
        feats = [voxel_features(c, mods) for c in cases]
        labels = [c["seg"][c["t1"] != 0] for c in cases]
        preds, truths = [], []
        for train, test in (folds, folds[::-1]):
            x = np.concatenate([feats[i] for i in train])
            y = np.concatenate([labels[i] for i in train])
            pick = rng.choice(len(y), size=min(len(y), 60000), replace=False)
            clf = HistGradientBoostingClassifier(max_iter=100, random_state=0)
            clf.fit(x[pick], y[pick])
            preds += [clf.predict(feats[i]) for i in test]
            truths += [labels[i] for i in test]
        table[name] = region_dice(np.concatenate(preds), np.concatenate(truths))
    print("\nphantom Dice (per-voxel classifier, 12 cases at 48^3, 2-fold CV):")
    print("       " + " ".join(f"{r:>6}" for r in REGIONS))
    for name, row in table.items():
        print(f"{name:6} " + " ".join(f"{row[r]:6.3f}" for r in REGIONS))
    return table


def test_modality_information_ordering(dice_table: dict[str, dict[str, float]]) -> None:
    d = dice_table
    # ET needs T1ce.
    for m in ("t1", "t2", "flair"):
        assert d["t1ce"]["ET"] > d[m]["ET"] + 0.3
    # WT is seen best in FLAIR; T1 is the weakest for it.
    assert d["flair"]["WT"] > max(d["t1"]["WT"], d["t1ce"]["WT"]) + 0.2
    assert d["flair"]["WT"] > d["t2"]["WT"]
    assert d["t1"]["WT"] == min(d[m]["WT"] for m in MODALITIES)
    # TC: T1ce beats T1 clearly.
    assert d["t1ce"]["TC"] > d["t1"]["TC"] + 0.2
    # All four together are at least as good as the best single modality, and better than
    # T1ce on WT and FLAIR on ET.
    for region in REGIONS:
        assert d["all"][region] >= max(d[m][region] for m in MODALITIES) - 0.03
    assert d["all"]["WT"] > d["t1ce"]["WT"] + 0.2
    assert d["all"]["ET"] > d["flair"]["ET"] + 0.3
