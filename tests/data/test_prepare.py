"""``data prepare``: the phantom into nnU-Net, idempotence, atomicity, bad data, --exclude-bad."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
from helpers import ROOT
from release_factory import make_bad_release, make_release

from kdbench import Backbone
from kdbench.data.prepare import prepare_dataset, read_marker
from kdbench.data.prepared import PreparedDataset
from kdbench.errors import KdbenchError
from kdbench.modalities import MODALITIES
from kdbench.plugin_manager import load_plugins
from kdbench_plugins.phantom import generate_phantom

NNUNET_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


# -- orchestration, with a light backbone registered inline (no nnU-Net) ----------------------

class ListingBackbone(Backbone):
    """Records the cases it is given, to test the orchestration without nnU-Net."""

    name = "listing"

    def prepare(self, cases, label_map, dest, options, *, name, num_processes=1):
        (dest / "cases.txt").write_text("\n".join(c.case_id for c in cases))
        return {"cases": len(cases), "label_map": {str(k): v for k, v in label_map.items()}}


@pytest.fixture
def registry_with_listing():
    registry = load_plugins(use_env=False)
    registry.backbones.add(ListingBackbone)
    return registry


def test_bad_release_is_reported_whole_and_nothing_written(tmp_path, registry_with_listing):
    source, expected = make_bad_release(tmp_path / "bad")
    data_dir = tmp_path / "data"
    with pytest.raises(KdbenchError) as info:
        prepare_dataset(registry_with_listing, source, "bad", data_dir, backbone="listing")
    report = str(info.value)
    assert len(expected) >= 8
    for case, keyword in expected.items():
        line = next((ln for ln in report.splitlines() if case in ln), None)
        assert line is not None, f"{case} missing from the report:\n{report}"
        assert keyword.lower() in line.lower(), (case, keyword, line)
    assert "--exclude-bad" in report
    assert not data_dir.exists()


def test_exclude_bad_writes_the_good_cases_and_the_list(tmp_path, registry_with_listing):
    source, expected = make_bad_release(tmp_path / "bad")
    result = prepare_dataset(registry_with_listing, source, "bad", tmp_path / "data",
                             backbone="listing", exclude_bad=True)
    written = (result.path / "listing" / "cases.txt").read_text().split()
    assert set(written).isdisjoint(expected) and written
    excluded = json.loads((result.path / "excluded.json").read_text())
    assert {e["case"] for e in excluded} == set(expected) == set(result.excluded)
    assert set(PreparedDataset.open(result.path).cases) == set(written)


def test_idempotent_force_and_name_conflict(tmp_path, registry_with_listing):
    source = make_release(tmp_path / "r2021", "2021", n_cases=3)
    other = make_release(tmp_path / "r2023", "2023", n_cases=2)
    data_dir = tmp_path / "data"
    first = prepare_dataset(registry_with_listing, source, "ds", data_dir, backbone="listing")
    assert first.created and first.cases == 3
    stamp = (first.path / "prepared.json").stat().st_mtime_ns
    again = prepare_dataset(registry_with_listing, source, "ds", data_dir, backbone="listing")
    assert not again.created and (first.path / "prepared.json").stat().st_mtime_ns == stamp
    with pytest.raises(KdbenchError, match="was prepared from .* --force"):
        prepare_dataset(registry_with_listing, other, "ds", data_dir, backbone="listing")
    assert read_marker(first.path)["layout"] == "2019-2021"  # untouched
    forced = prepare_dataset(registry_with_listing, other, "ds", data_dir, backbone="listing",
                             force=True)
    assert forced.created and read_marker(forced.path)["layout"] == "2023"
    assert sorted(p.name for p in data_dir.iterdir()) == [".ds.lock", "ds"]


def test_unrecognised_source(tmp_path, registry_with_listing):
    (tmp_path / "empty").mkdir()
    with pytest.raises(KdbenchError, match="no dataset reader"):
        prepare_dataset(registry_with_listing, tmp_path / "empty", "x", tmp_path / "d",
                        backbone="listing")
    with pytest.raises(KdbenchError, match="does not exist"):
        prepare_dataset(registry_with_listing, tmp_path / "nope", "x", tmp_path / "d",
                        backbone="listing")


# -- the phantom through nnU-Net, interrupted once ----------------------------------------------

@pytest.fixture(scope="module")
def phantom_prepared(tmp_path_factory):
    """Kill a prepare mid-way, look at what it left, then rerun it to completion."""
    root = tmp_path_factory.mktemp("prepare")
    source = generate_phantom(root / "phantom", cases=6, shape=(32, 32, 32), seed=0)
    data_dir = root / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KDBENCH_", "nnUNet_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kdbench", "data", "prepare", "--source", str(source),
         "--name", "phantom", "--data-dir", str(data_dir)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if list(data_dir.glob(".tmp-phantom-*/nnunet/nnUNet_raw/*/dataset.json")):
            break  # the raw dataset is written: preprocessing is under way
        time.sleep(0.2)
    assert proc.poll() is None, f"prepare ended before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after_kill = {"target_exists": (data_dir / "phantom").exists(),
                  "leftovers": [p.name for p in data_dir.glob(".tmp-phantom-*")]}
    registry = load_plugins(use_env=False)
    result = prepare_dataset(registry, source, "phantom", data_dir)
    return {"source": source, "data_dir": data_dir, "result": result, "after_kill": after_kill,
            "registry": registry}


def test_kill_leaves_nothing_that_looks_finished(phantom_prepared):
    after = phantom_prepared["after_kill"]
    assert not after["target_exists"] and after["leftovers"]  # killed mid-way, in the temp dir
    data_dir = phantom_prepared["data_dir"]
    assert not list(data_dir.glob(".tmp-phantom-*"))  # the rerun cleaned up
    assert phantom_prepared["result"].created


def test_phantom_is_preprocessed_by_nnunet(phantom_prepared):
    result = phantom_prepared["result"]
    marker = read_marker(result.path)
    assert marker["cases"] == 6 and marker["layout"] == "2019-2021"
    summary = marker["backbone"]["summary"]
    nnunet_dir = result.path / "nnunet"
    plans = json.loads((nnunet_dir / summary["plans_file"]).read_text())
    assert "3d_fullres" in plans["configurations"]
    assert summary["cases"] == 6
    dataset_json = json.loads(
        (nnunet_dir / "nnUNet_raw" / summary["dataset_name"] / "dataset.json").read_text())
    assert dataset_json["regions_class_order"] == [1, 2, 3]
    assert dataset_json["labels"]["enhancing tumor"] == [3]
    assert not any(v in os.environ for v in NNUNET_VARIABLES)  # nothing leaked


def test_raw_labels_are_canonical(phantom_prepared):
    result, source = phantom_prepared["result"], phantom_prepared["source"]
    summary = read_marker(result.path)["backbone"]["summary"]
    raw = result.path / "nnunet" / "nnUNet_raw" / summary["dataset_name"]
    case = "BraTS2021_00002"
    original = np.asanyarray(nib.load(source / case / f"{case}_seg.nii.gz").dataobj)
    converted = np.asanyarray(nib.load(raw / "labelsTr" / f"{case}.nii.gz").dataobj)
    # BraTS 2021 -> nnU-Net BraTS convention, written out independently of the code under test
    expected = np.select([original == 2, original == 1, original == 4], [1, 2, 3], 0)
    np.testing.assert_array_equal(converted, expected)
    for channel, modality in enumerate(MODALITIES):
        image = raw / "imagesTr" / f"{case}_{channel:04d}.nii.gz"
        assert image.read_bytes() == (source / case / f"{case}_{modality}.nii.gz").read_bytes()


def test_strategies_select_channels_from_the_same_bytes(phantom_prepared):
    result, registry = phantom_prepared["result"], phantom_prepared["registry"]
    dataset = PreparedDataset.open(result.path)
    backbone = registry.backbones.get(dataset.backbone_name)()
    assert len(dataset.cases) == 6
    case = next(iter(dataset.cases))
    everything, seg = dataset.load_case(backbone, case, MODALITIES)
    assert everything.shape[0] == 4
    for index, modality in enumerate(MODALITIES):
        one, seg_one = dataset.load_case(backbone, case, [modality])
        assert one.shape[0] == 1 and one.tobytes() == everything[index].tobytes()
        np.testing.assert_array_equal(seg_one, seg)
    pair, _ = dataset.load_case(backbone, case, ["flair", "t1ce"])
    assert pair.tobytes() == everything[[1, 3]].tobytes()  # canonical channel order
    assert set(np.unique(seg).tolist()) <= {-1, 0, 1, 2, 3}


def test_second_prepare_does_nothing(phantom_prepared):
    result = phantom_prepared["result"]
    before = {p: p.stat().st_mtime_ns for p in result.path.rglob("*")}
    again = prepare_dataset(phantom_prepared["registry"], phantom_prepared["source"], "phantom",
                            phantom_prepared["data_dir"])
    assert not again.created
    assert {p: p.stat().st_mtime_ns for p in result.path.rglob("*")} == before
