"""A protocol's data: generated, prepared and split once; test cases never in training."""

from __future__ import annotations

import pytest

from kdbench import Backbone
from kdbench.data.protocol_data import dataset_name, ensure_data
from kdbench.data.split_files import load_splits
from kdbench.errors import KdbenchError
from kdbench.plugin_manager import load_plugins
from kdbench.protocol import load_protocol


class ListingBackbone(Backbone):
    """Prepares nothing but a list, so that these tests need no nnU-Net run."""

    name = "listing"

    def prepare(self, cases, label_map, dest, options, *, name, num_processes=1):
        (dest / "cases.txt").write_text("\n".join(c.case_id for c in cases))
        return {"cases": len(cases)}


@pytest.fixture
def setup(tmp_path, demo_data, write_protocol):
    registry = load_plugins(use_env=False)
    registry.backbones.add(ListingBackbone)
    demo_data["dataset"]["options"] = {"cases": 12, "shape": [24, 24, 24], "seed": 1}
    demo_data["split"] = {"test_size": 4, "seed": 3, "validation_fraction": 0.25}
    demo_data["training_sizes"] = [2, 4, 8]
    demo_data["backbone"] = {"name": "listing"}
    return registry, demo_data, write_protocol, tmp_path / "data"


def test_generate_prepare_split_and_reuse(setup):
    registry, data, write, data_dir = setup
    protocol = load_protocol(write(data), registry)
    first = ensure_data(protocol, registry, data_dir)
    assert first.dataset.path == data_dir / dataset_name(protocol, registry)
    assert dataset_name(protocol, registry).startswith("phantom-")
    assert len(first.dataset.cases) == 12 and len(first.splits.test) == 4
    assert load_splits(first.splits_path).hash == first.splits.hash
    test = set(first.splits.test)
    for seed in protocol.seeds:
        for n in protocol.training_sizes:
            subset = first.splits.subset(n, seed)
            assert test.isdisjoint(subset.train) and test.isdisjoint(subset.validation)
    stamp = first.splits_path.stat().st_mtime_ns
    again = ensure_data(protocol, registry, data_dir)
    assert again.splits.hash == first.splits.hash
    assert again.splits_path.stat().st_mtime_ns == stamp
    # other split settings: another file, the same prepared dataset
    data["split"]["seed"] = 4
    other = ensure_data(load_protocol(write(data), registry), registry, data_dir)
    assert other.splits_path != first.splits_path and other.dataset.path == first.dataset.path
    assert set(other.splits.test) != test


def test_n_larger_than_the_pool_of_a_release_on_disk(setup, tmp_path):
    from release_factory import make_release

    registry, data, write, data_dir = setup
    source = make_release(tmp_path / "release", "2021", n_cases=5)
    data["dataset"] = {"source": "brats", "path": str(source)}
    data["split"] = {"test_size": 2}
    data["training_sizes"] = [2, 4]
    protocol = load_protocol(write(data), registry)  # the size of a release is unknown here
    with pytest.raises(KdbenchError, match="N=4 is larger than the training pool of 3"):
        ensure_data(protocol, registry, data_dir)
    assert dataset_name(protocol, registry) == "release"


def test_unlabelled_cases_beyond_a_release_pool_are_refused_with_the_arithmetic(setup, tmp_path):
    """A BraTS-like release whose size is known only once read: `genkd_aug` asking for more
    unlabelled cases than lie outside the test set and the largest subset is refused before
    any Job, naming the numbers (1251 - 251 - 1000 = 0 on BraTS 2021's learning curve)."""
    from release_factory import make_release

    registry, data, write, data_dir = setup
    source = make_release(tmp_path / "release", "2021", n_cases=7)
    data["dataset"] = {"source": "brats", "path": str(source)}
    data["split"] = {"test_size": 2}
    data["training_sizes"] = [2, 4]
    data["statistics"] = {"baseline": "mono"}
    data["strategies"] = [{"name": "mono"}, {"name": "genkd", "label": "genkd_aug",
                                             "hparams": {"unlabelled_cases": 2}}]
    protocol = load_protocol(write(data), registry)  # unknown size: nothing to check yet
    with pytest.raises(KdbenchError) as err:
        ensure_data(protocol, registry, data_dir)
    text = str(err.value)
    assert "strategies[1].hparams.unlabelled_cases" in text
    assert "only 1 cases" in text and "7 cases - 2 test - 4 in the largest subset" in text
    data["strategies"][1]["hparams"]["unlabelled_cases"] = 1
    ensure_data(load_protocol(write(data), registry), registry, data_dir)
